//! conveyor-api (placeholder: filled in by its issue).
