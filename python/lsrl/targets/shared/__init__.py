"""What the target modules share: the layer-form stage machinery (:mod:`.common`), the ideal- and
standard-mode cell constructions (:mod:`.ideal`, :mod:`.standard`), the cell op definitions (:mod:`.cells`)
and the torch / ONNX export frameworks (:mod:`.torch_export`, :mod:`.onnx_export`).  Nothing here names a
target: a target module passes its own cell and export hooks in."""
