//! Adapters that make the stage crates' models [`Encoder`](crate::Encoder)s and
//! [`Generator`](crate::Generator)s. Each adapter owns its model, device and precision.

pub mod clip;
pub mod clip_metric;
pub mod ridge;
pub mod vdvae;
pub mod versatile_diffusion;
