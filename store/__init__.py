"""The case store and archive (档案管理) in PostgreSQL: one row per case, its event log, its archive documents."""
