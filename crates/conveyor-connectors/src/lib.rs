//! conveyor-connectors (placeholder: filled in by its issue).
