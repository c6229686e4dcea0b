"""tongjie: the event-sourced circulation ledger of a consortium of public libraries."""
