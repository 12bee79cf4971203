//! conveyor-queue (placeholder: filled in by its issue).
