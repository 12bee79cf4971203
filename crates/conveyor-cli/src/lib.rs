//! conveyor-cli (placeholder: filled in by its issue).
