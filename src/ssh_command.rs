//! ssh_command (to be written)
