//! conveyor-sync (placeholder: filled in by its issue).
