// The Elman RNN cell with ReLU (target relu_rnn, python/lsrl/targets/relu_rnn.py):
// h' = ReLU(W_ih x + b_ih + W_hh h + b_hh), the two biases summed into b by the descriptor.
#include "../cells.hpp"

namespace lsrl {
namespace kernel {
namespace {

template <typename T>
void run(const CellBlock<T>& blk) {
    // without recurrent weights the whole block is one affine map + ReLU
    const bool recurrent = blk.node.R.nnz() > 0;
    input_projection(blk, blk.out, !recurrent);
    if (recurrent) {
        for (index_t t = 0; t < blk.tc; ++t) {
            step_recurrence(blk.node.R, blk.g, t, blk.state, blk.out, blk.L);
            T* cur = blk.out + t * blk.g;
            for (index_t i = 0; i < blk.node.dim; ++i)
                for (index_t b = 0; b < blk.g; ++b) cur[i * blk.L + b] = relu(cur[i * blk.L + b]);
        }
    }
    save_last_column(blk, blk.node.dim);
}

// one gate block; state h; no scratch; always ReLU
template <typename T>
CellKind<T> kind() {
    return {"rnn_relu", 1, 1, 0, 0, false, false, &run<T>};
}

const KindRegistrar<CellKind> registrar(kind<double>(), kind<float>());

}  // namespace
}  // namespace kernel
}  // namespace lsrl
