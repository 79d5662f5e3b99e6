"""The worker's cost metering counted alone (:mod:`harness.sandbox.metering`); the cost a
served entry reports is tested with the worker, in test_protocol.py."""

from __future__ import annotations

from harness.sandbox import metering


def test_multiply_adds_inside_function_calls_count_and_inside_loops_are_unknown():
    """A graph's function calls (a SavedModel's layers) add their operations; a loop's count is
    not in the graph, so a network with one is unknown."""
    import tensorflow as tf

    weights = tf.Variable(tf.ones((4, 3)))
    inner = tf.function(lambda x: tf.matmul(x, weights))
    spec = tf.TensorSpec((2, 4))
    called = tf.function(lambda x: inner(x) + inner(x)).get_concrete_function(spec)
    looped = tf.function(lambda x: tf.map_fn(lambda row: tf.matmul(row[None], weights)[0], x))
    assert metering._graph_macs(called.graph) == 2 * (2 * 4 * 3)
    assert metering._graph_macs(looped.get_concrete_function(spec).graph) is None
