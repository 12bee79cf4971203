//! conveyor-webhooks (placeholder: filled in by its issue).
