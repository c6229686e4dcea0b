"""Disputes between libraries: the evidence file, the list, the sweep and the settlement sheet.

The ``Dispute`` aggregate and its rules live in ``ledger.domain.disputes``; this
package reads the event store to put the facts in front of the people who argue.
"""
