"""The paper's three programs and their data builders (programs.md), and random λ-conditional programs."""
from .conditional import CONDITIONALS
from .continuous import (cell_centre, continuous_approximator, continuous_graph, continuous_prompt,
                         continuous_query, greedy_rounding_input, repeated_cell_input)
from .data import create_test_target_function, draw_queries, random_token_map
from .more_ones import more_ones
from .random_conditionals import random_conditional_program
from .token_map import (COUNTERS, rotation_counter_exact, token_answer, token_map, token_map_graph,
                        token_prompt)

__all__ = [
    "CONDITIONALS", "COUNTERS",
    "more_ones",
    "continuous_approximator", "continuous_graph", "continuous_prompt", "continuous_query",
    "cell_centre", "repeated_cell_input", "greedy_rounding_input",
    "token_map", "token_map_graph", "token_prompt", "token_answer", "rotation_counter_exact",
    "create_test_target_function", "random_token_map", "draw_queries",
    "random_conditional_program",
]
