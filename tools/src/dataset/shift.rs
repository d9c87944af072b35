//! Shifts of image-like samples: rotation, Gaussian noise, Gaussian blur and inversion, applied
//! to one item at a time so that a stream can change from some request on.
//!
//! An item is image-like when its shape (without the batch dimension) is `[H, W]`, `[1, H, W]`,
//! `[H, W, 1]` or flat with a square length (784 is 28 × 28), and its datatype is UINT8
//! (0–255) or FP32/FP64 (0–1). Transforms work in the 0–1 range and write back in the item's
//! own datatype, clamped to its range, so a shifted item is one the same model accepts.

use std::fmt;
use std::str::FromStr;

use idn_node_agent::wire::tensor::{Tensor, TensorData};

use super::{Dataset, DatasetError};

/// A change applied to every item of a stream from the shift point on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Rotation counter-clockwise (as displayed) about the centre, bilinear; pixels coming from
    /// outside the image are 0 (background).
    Rotate { degrees: f64 },
    /// Additive Gaussian noise of standard deviation `sigma` (0–1 range), seeded.
    Noise { sigma: f64 },
    /// Gaussian blur of standard deviation `radius` pixels.
    Blur { radius: f64 },
    /// `max - value`: ink becomes background and background ink.
    Invert,
}

impl FromStr for Transform {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, value) = match text.split_once(':') {
            Some((kind, value)) => (kind, Some(value)),
            None => (text, None),
        };
        let number = |what: &str, min: f64| -> Result<f64, String> {
            let value = value.ok_or_else(|| format!("{kind} needs a {what}: {kind}:{what}"))?;
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= min)
                .ok_or_else(|| format!("{kind}: {value:?} is not a number >= {min}"))
        };
        match kind {
            "rotate" => Ok(Transform::Rotate {
                degrees: number("DEG", f64::MIN)?,
            }),
            "noise" => Ok(Transform::Noise {
                sigma: number("SIGMA", 0.0)?,
            }),
            "blur" => Ok(Transform::Blur {
                radius: number("RADIUS", 0.0)?,
            }),
            "invert" if value.is_none() => Ok(Transform::Invert),
            "invert" => Err("invert takes no value".to_owned()),
            _ => Err(format!(
                "unknown shift {kind:?}: use rotate:DEG, noise:SIGMA, blur:RADIUS or invert"
            )),
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Rotate { degrees } => write!(f, "rotate:{degrees}"),
            Transform::Noise { sigma } => write!(f, "noise:{sigma}"),
            Transform::Blur { radius } => write!(f, "blur:{radius}"),
            Transform::Invert => f.write_str("invert"),
        }
    }
}

/// Height and width of an item of shape `item_shape` (the batch dimension removed), if it is
/// image-like.
pub fn image_size(item_shape: &[usize]) -> Option<(usize, usize)> {
    match *item_shape {
        [h, w] | [1, h, w] | [h, w, 1] => Some((h, w)),
        [n] => {
            let side = (n as f64).sqrt().round() as usize;
            (side * side == n).then_some((side, side))
        }
        _ => None,
    }
}

/// Checks that `sample` has one input of image-like items, naming the file and shape if not.
pub fn check(sample: &Dataset) -> Result<(), DatasetError> {
    let [input] = sample.inputs.as_slice() else {
        return Err(DatasetError::invalid(
            &sample.source,
            format!(
                "a shift transforms one image input; the sample has {} inputs",
                sample.inputs.len()
            ),
        ));
    };
    let item_shape = &input.shape[1..];
    if image_size(item_shape).is_none() {
        return Err(DatasetError::invalid(
            &sample.source,
            format!(
                "items of shape {item_shape:?} are not image-like: a shift needs [H, W], \
                 [1, H, W], [H, W, 1] or a flat square length such as 784"
            ),
        ));
    }
    match input.data {
        TensorData::Uint8(_) | TensorData::Fp32(_) | TensorData::Fp64(_) => Ok(()),
        ref other => Err(DatasetError::invalid(
            &sample.source,
            format!(
                "datatype {} is not image-like: a shift needs UINT8 (0-255) or FP32/FP64 (0-1)",
                other.datatype()
            ),
        )),
    }
}

impl Transform {
    /// The transform of one item (`item` of shape `[1, ...]`, image-like as [`check`]
    /// accepts); `rng` draws the noise.
    pub fn apply(&self, item: &Tensor, rng: &mut fastrand::Rng) -> Tensor {
        let (h, w) = image_size(&item.shape[1..]).expect("a checked sample is image-like");
        let (plane, scale) = match &item.data {
            TensorData::Uint8(v) => (v.iter().map(|&b| f64::from(b) / 255.0).collect(), 255.0),
            TensorData::Fp32(v) => (v.iter().map(|&x| f64::from(x)).collect(), 1.0),
            TensorData::Fp64(v) => (v.clone(), 1.0),
            other => unreachable!("a checked sample has no {} input", other.datatype()),
        };
        let plane = self.on_plane(plane, h, w, rng);
        let data = match item.data {
            TensorData::Uint8(_) => {
                TensorData::Uint8(plane.iter().map(|&v| unit(v, scale) as u8).collect())
            }
            TensorData::Fp32(_) => {
                TensorData::Fp32(plane.iter().map(|&v| unit(v, scale) as f32).collect())
            }
            _ => TensorData::Fp64(plane.iter().map(|&v| unit(v, scale)).collect()),
        };
        Tensor {
            name: item.name.clone(),
            shape: item.shape.clone(),
            data,
        }
    }

    /// The transform of an `h × w` row-major plane of values in 0–1.
    fn on_plane(&self, plane: Vec<f64>, h: usize, w: usize, rng: &mut fastrand::Rng) -> Vec<f64> {
        match *self {
            Transform::Rotate { degrees } => rotate(&plane, h, w, degrees),
            Transform::Noise { sigma } => plane
                .iter()
                .map(|&v| v + sigma * standard_normal(rng))
                .collect(),
            Transform::Blur { radius } => blur(&plane, h, w, radius),
            Transform::Invert => plane.iter().map(|&v| 1.0 - v).collect(),
        }
    }
}

/// A value of the 0–1 range clamped and scaled to `scale` (rounded for bytes).
fn unit(v: f64, scale: f64) -> f64 {
    let v = v.clamp(0.0, 1.0) * scale;
    if scale > 1.0 { v.round() } else { v }
}

fn rotate(plane: &[f64], h: usize, w: usize, degrees: f64) -> Vec<f64> {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    // Sampling positions this close to a pixel are that pixel, so that quarter turns are exact.
    let snap = |x: f64| {
        if (x - x.round()).abs() < 1e-9 {
            x.round()
        } else {
            x
        }
    };
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            // The inverse rotation: where the output pixel comes from (y grows downwards).
            let sx = snap(cx + dx * cos - dy * sin);
            let sy = snap(cy + dx * sin + dy * cos);
            out.push(bilinear(plane, h, w, sy, sx));
        }
    }
    out
}

/// The plane's value at a fractional position, 0 outside the image.
fn bilinear(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
            0.0
        } else {
            plane[yy as usize * w + xx as usize]
        }
    };
    let mut sum = 0.0;
    for (yy, wy) in [(y0, 1.0 - fy), (y0 + 1.0, fy)] {
        for (xx, wx) in [(x0, 1.0 - fx), (x0 + 1.0, fx)] {
            sum += at(yy, xx) * wy * wx;
        }
    }
    sum
}

/// Separable Gaussian blur, the kernel cut at 3σ and renormalised at the borders.
fn blur(plane: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    if sigma == 0.0 {
        return plane.to_vec();
    }
    let reach = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-reach..=reach)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    // One pass along rows (`step` 1) or columns (`step` w) of `len` pixels.
    let pass = |input: &[f64], len: usize, step: usize, lines: usize, line_step: usize| {
        let mut out = vec![0.0; input.len()];
        for line in 0..lines {
            for i in 0..len {
                let (mut sum, mut weight) = (0.0, 0.0);
                for (k, d) in (-reach..=reach).enumerate() {
                    let j = i as isize + d;
                    if (0..len as isize).contains(&j) {
                        sum += kernel[k] * input[line * line_step + j as usize * step];
                        weight += kernel[k];
                    }
                }
                out[line * line_step + i * step] = sum / weight;
            }
        }
        out
    };
    let rows = pass(plane, w, 1, h, w);
    pass(&rows, h, w, w, 1)
}

/// A draw of N(0, 1) (Box–Muller).
fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64(); // in (0, 1], so the logarithm is finite
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(shape: &[usize], data: Vec<u8>) -> Tensor {
        Tensor {
            name: "input".into(),
            shape: shape.to_vec(),
            data: TensorData::Uint8(data),
        }
    }

    fn apply(t: &str, item: &Tensor) -> Tensor {
        t.parse::<Transform>()
            .unwrap()
            .apply(item, &mut fastrand::Rng::with_seed(7))
    }

    fn digits(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 37 % 256) as u8).collect()
    }

    #[test]
    fn shifts_parse_and_print() {
        for text in [
            "rotate:90",
            "rotate:-12.5",
            "noise:0.2",
            "blur:1.5",
            "invert",
        ] {
            assert_eq!(text.parse::<Transform>().unwrap().to_string(), text);
        }
        let err = |t: &str| t.parse::<Transform>().unwrap_err();
        assert_eq!(err("rotate"), "rotate needs a DEG: rotate:DEG");
        assert_eq!(err("noise:-1"), "noise: \"-1\" is not a number >= 0");
        assert!(err("flip:1").starts_with("unknown shift \"flip\""));
        assert_eq!(err("invert:2"), "invert takes no value");
    }

    #[test]
    fn image_sizes_of_the_accepted_layouts() {
        assert_eq!(image_size(&[784]), Some((28, 28)));
        assert_eq!(image_size(&[3, 5]), Some((3, 5)));
        assert_eq!(image_size(&[1, 3, 5]), Some((3, 5)));
        assert_eq!(image_size(&[3, 5, 1]), Some((3, 5)));
        assert_eq!(image_size(&[10]), None);
        assert_eq!(image_size(&[3, 3, 3]), None);
    }

    #[test]
    fn a_quarter_turn_moves_the_top_right_corner_to_the_top_left() {
        let mut pixels = vec![0; 9];
        pixels[2] = 200;
        let turned = apply("rotate:90", &bytes(&[1, 3, 3], pixels));
        assert_eq!(
            turned.data,
            TensorData::Uint8(vec![200, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(turned.shape, [1, 3, 3]);
    }

    #[test]
    fn two_quarter_turns_are_a_half_turn_and_four_are_none() {
        let item = bytes(&[1, 784], digits(784));
        let twice = apply("rotate:90", &apply("rotate:90", &item));
        assert_eq!(twice, apply("rotate:180", &item));
        assert_eq!(apply("rotate:180", &twice), item);
        let floats = Tensor {
            name: "input".into(),
            shape: vec![1, 28, 28, 1],
            data: TensorData::Fp32(digits(784).iter().map(|&b| f32::from(b) / 255.0).collect()),
        };
        assert_eq!(
            apply("rotate:90", &apply("rotate:90", &floats)),
            apply("rotate:180", &floats)
        );
    }

    #[test]
    fn inverting_twice_is_the_identity() {
        let item = bytes(&[1, 4, 4], digits(16));
        let inverted = apply("invert", &item);
        assert_eq!(
            inverted.data,
            TensorData::Uint8(digits(16).iter().map(|b| 255 - b).collect())
        );
        assert_eq!(apply("invert", &inverted), item);
    }

    #[test]
    fn noise_is_reproducible_and_stays_in_range() {
        let item = Tensor {
            name: "input".into(),
            shape: vec![1, 784],
            data: TensorData::Fp32(vec![0.5; 784]),
        };
        let noise = Transform::Noise { sigma: 0.5 };
        let a = noise.apply(&item, &mut fastrand::Rng::with_seed(1));
        assert_eq!(a, noise.apply(&item, &mut fastrand::Rng::with_seed(1)));
        assert_ne!(a, noise.apply(&item, &mut fastrand::Rng::with_seed(2)));
        let TensorData::Fp32(values) = &a.data else {
            panic!("the datatype is kept")
        };
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(values.contains(&0.0) && values.contains(&1.0), "clamped");
        let mean = values.iter().sum::<f32>() / 784.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }

    #[test]
    fn blur_spreads_a_dot_and_keeps_a_flat_image() {
        let mut pixels = vec![0; 25];
        pixels[12] = 255;
        let TensorData::Uint8(blurred) = apply("blur:1", &bytes(&[1, 5, 5], pixels)).data else {
            panic!("the datatype is kept")
        };
        assert!(blurred[12] < 255 && blurred[12] > blurred[11] && blurred[11] > 0);
        assert_eq!(blurred[11], blurred[13]);
        assert_eq!(blurred[7], blurred[17]);
        let flat = bytes(&[1, 5, 5], vec![90; 25]);
        assert_eq!(apply("blur:2", &flat), flat);
        assert_eq!(
            apply("blur:0", &bytes(&[1, 16], digits(16))),
            bytes(&[1, 16], digits(16))
        );
    }

    #[test]
    fn samples_that_are_not_image_like_are_named() {
        let sample = |shape: Vec<usize>, data| Dataset {
            source: "x.npy".into(),
            classes: vec!["0".into()],
            inputs: vec![Tensor {
                name: "input".into(),
                shape,
                data,
            }],
            labels: vec![0],
        };
        let err = check(&sample(vec![1, 10], TensorData::Fp32(vec![0.0; 10]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.npy: items of shape [10] are not image-like: a shift needs [H, W], [1, H, W], \
             [H, W, 1] or a flat square length such as 784"
        );
        let err = check(&sample(vec![1, 4], TensorData::Int64(vec![0; 4]))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.npy: datatype INT64 is not image-like"),
            "{err}"
        );
        assert!(check(&sample(vec![1, 2, 2], TensorData::Uint8(vec![0; 4]))).is_ok());
    }
}
