"""The single-host switch's saved state: one SQLite file per switch (see docs/operations.md).

* :mod:`.schema` — the tables, the schema version and the migrations between versions;
* :mod:`.store` — opening (or refusing) a state file, transactional reads and writes;
* :mod:`.restore` — deciding what ``vspan up`` starts with (saved state vs. the config
  file) and putting the learned MAC table back;
* :mod:`.keeper` — keeping the file up to date while the switch runs.
"""
