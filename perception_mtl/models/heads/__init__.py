"""Task heads. A model receives its heads as builders and never imports tasks: a task's
`build_head` is one."""
from typing import Callable

from torch import nn

HeadBuilder = Callable[[int, list[int]], nn.Module]  # (FPN channels, strides) -> the head module
