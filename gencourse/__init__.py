"""gencourse: the helper package of a course on deep generative models.

One flat module per concern (see ../shared/design.md in the course repo):
runtime, data, nn, train, evaluate, plot, and one module per model family.
"""

__version__ = "0.1.0"
