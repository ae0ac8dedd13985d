"""SQLite storage. All SQL of the project lives in this package."""

from storage.db import Database
from storage.incidents import IncidentRepo

__all__ = ["Database", "IncidentRepo"]
