//! conveyor-runtime (placeholder: filled in by its issue).
