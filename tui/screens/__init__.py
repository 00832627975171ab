"""The dashboard's panes (one per tab) and modal screens."""
