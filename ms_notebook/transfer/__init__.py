"""Transfer learning made explicit: ``TransferPlan`` (what to reload, what to freeze), ``TransferReport``."""

from ms_notebook.transfer.merge import merge
from ms_notebook.transfer.patterns import PatternError
from ms_notebook.transfer.plan import PlanWarning, TransferError, TransferPlan
from ms_notebook.transfer.report import TransferReport

__all__ = ["PatternError", "PlanWarning", "TransferError", "TransferPlan", "TransferReport", "merge"]
