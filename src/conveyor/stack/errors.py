"""Errors the stack reports to people; importing this module is cheap (no prefect)."""


class StackError(RuntimeError):
    """The stack could not be brought up or down; the message says why in one sentence."""


class UnknownDeploymentError(LookupError):
    """No deployment of that name exists."""
