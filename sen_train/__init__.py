"""SEN training: model, losses, data and evaluation.

Importing this package stays cheap (no torch) so that the data tools and metrics can be used
on a machine without the `train` extra; the model parts import torch when they are used.
"""

__version__ = "0.1.0"
