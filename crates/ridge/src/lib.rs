//! # ridge
//!
//! Multi-target ridge regression at NSD scale. One problem object, built once from the fMRI design
//! matrix, serves every target group and every regularisation strength: the Gram matrix is shared,
//! targets can stream from disk in column blocks, and predictions never materialise the full weight
//! matrix. Intercepts are fitted by centering, as scikit-learn's `Ridge` does, and fitted models are
//! saved as safetensors that numpy can read. It knows nothing of NSD files or of neural networks.

mod error;

pub use error::RidgeError;
