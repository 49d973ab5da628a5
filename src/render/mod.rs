//! One renderer per target (to be written).
