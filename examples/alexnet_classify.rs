//! Build torchvision's AlexNet, load its weights, and classify an image.
//!
//! ```sh
//! cargo run --release --example alexnet_classify -- --weights alexnet-owt-7be5be79.pth --image photo.jpg
//! cargo run --release --example alexnet_classify   # no weights: seeded random ones
//! ```
//!
//! The weights are torchvision's `alexnet-owt-7be5be79.pth` (from
//! <https://download.pytorch.org/models/alexnet-owt-7be5be79.pth>, or in
//! Python `torchvision.models.alexnet(weights="IMAGENET1K_V1")`, which caches
//! it under `~/.cache/torch/hub/checkpoints/`), or a safetensors file with
//! the same names. It is read without Python and checked strictly against
//! the network: every missing, unexpected or misshapen tensor is listed.
//!
//! The image (JPEG or PNG) is resized to 224 x 224 and normalised with
//! ImageNet's channel means and deviations, as torchvision's transforms do
//! (they crop the centre of a 256-pixel resize; we resize the whole image).
//! With no image, a synthetic test pattern is used. The output is the five
//! likeliest of the 1000 ImageNet classes, by index in torchvision's order
//! (`AlexNet_Weights.IMAGENET1K_V1.meta["categories"]` names them).

use nabla::autodiff::{Tape, Var};
use nabla::data::faces::{read_image, Color};
use nabla::nn::alexnet::AlexNet;
use nabla::{Rng, Tensor};
use std::error::Error;
use std::path::Path;

const SIDE: usize = 224;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

fn main() {
    if let Err(e) = run() {
        eprintln!("alexnet_classify: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let (weights, image) = parse_args()?;
    let net = AlexNet::torchvision(1000);

    let params = match &weights {
        Some(path) => {
            let params = nabla::weights::read(Path::new(path))?;
            net.check(&params).map_err(|e| format!("{path}: not torchvision's AlexNet: {e}"))?;
            println!("weights: {path}");
            params
        }
        None => {
            println!("No weights file given: get torchvision's AlexNet weights from");
            println!("  https://download.pytorch.org/models/alexnet-owt-7be5be79.pth");
            println!(
                "and pass it with --weights FILE. Running on SEEDED RANDOM WEIGHTS: the classes below mean nothing."
            );
            net.init(&mut Rng::new(0))
        }
    };

    let (pixels, what) = match &image {
        Some(path) => (read_image(Path::new(path), SIDE, Color::Rgb, 1.0 / 255.0)?, path.clone()),
        None => (test_pattern(), "a synthetic test pattern".to_string()),
    };
    // CHW rows from the reader; normalise each channel as torchvision does.
    let mut x = Tensor::from_vec(pixels, &[1, 3, SIDE, SIDE])?;
    for (c, plane) in x.data_mut().chunks_mut(SIDE * SIDE).enumerate() {
        plane.iter_mut().for_each(|v| *v = (*v - MEAN[c]) / STD[c]);
    }

    // Eval mode: an inference tape records nothing, and `forward` skips dropout.
    let logits = net.forward(&Tape::inference(), &params, &Var::constant(x))?;
    let probs = logits.value().softmax()?;
    let mut ranked: Vec<(usize, f32)> = probs.data().iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let label = if weights.is_none() { " (random weights)" } else { "" };
    println!("{what}: top 5 of 1000 ImageNet classes{label}");
    for (class, p) in &ranked[..5] {
        println!("  class {class:4}  probability {p:.4}");
    }
    Ok(())
}

/// `--weights FILE` and `--image FILE`, each optional.
fn parse_args() -> Result<(Option<String>, Option<String>), String> {
    let usage = "usage: alexnet_classify [--weights FILE.pth|FILE.safetensors] [--image FILE.jpg|FILE.png]";
    let (mut weights, mut image) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--weights" => &mut weights,
            "--image" => &mut image,
            _ => return Err(format!("unknown argument '{flag}'; {usage}")),
        };
        *slot = Some(args.next().ok_or_else(|| format!("{flag} needs a file; {usage}"))?);
    }
    Ok((weights, image))
}

/// Colour stripes over a gradient, pixels in [0, 1], channels first.
fn test_pattern() -> Vec<f32> {
    (0..3)
        .flat_map(|c| {
            (0..SIDE * SIDE).map(move |i| {
                let (y, x) = (i / SIDE, i % SIDE);
                let stripe = ((x / 28 + c) % 3 == 0) as u8 as f32;
                0.5 * stripe + 0.5 * y as f32 / SIDE as f32
            })
        })
        .collect()
}
