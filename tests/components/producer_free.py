"""A module defining no Ledger: a worker started with it lacks Ledger's code."""

from motion import Component

Other = Component("Other")
