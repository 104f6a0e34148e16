//! The models, generic over the burn `Device`: stage 1 (the cross quantizer: encoders, joint
//! encoder, codebook, cross maps, decoders, assembled in [`mxq_vae`]) and stage 2 (the
//! [`prior`]). Imports only the base modules (config, error, rng).

pub mod codebook_upkeep;
pub mod cross_maps;
pub mod cross_quantizer;
pub mod decoders;
pub mod image_encoder;
pub mod joint_encoder;
pub mod mxq_vae;
pub mod prior;
pub mod residual;
pub mod text_encoder;
