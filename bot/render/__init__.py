"""Block Kit rendering: pure functions from domain objects to validated blocks and views."""
