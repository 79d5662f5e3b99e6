"""Load and predict, isolated: the environments a submission runs in, the sandbox, the worker
process inside it, the grader's side of the worker and the messages between the two.

Imported by the worker, which may run in a submission's own environment (another Keras, another
NumPy): nothing here may import more than the standard library at package level.
"""
