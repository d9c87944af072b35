//! NumPy arrays: a `.npy` file of features with a `.npy` file of labels, or one `.npz` archive
//! holding both.
//!
//! Features keep their shape `[items, ...]` and their dtype, which must be one the OIP carries
//! (bool, uint8, int8, int32, int64, float32, float64); they are not rescaled. Labels are
//! integers of any width, one per item. In an archive the features are `x` (or `features`),
//! the labels `y` (or `labels`), and an optional string array `classes` names the labels.

use std::io;
use std::path::Path;

use idn_node_agent::wire::tensor::{Tensor, TensorData};
use npyz::npz::NpzArchive;
use npyz::{DType, NpyFile, Order, TypeChar};

use super::{DatasetError, Read, read_file};

/// Names the archive's arrays may have, in order of preference.
const FEATURE_NAMES: [&str; 2] = ["x", "features"];
const LABEL_NAMES: [&str; 2] = ["y", "labels"];
const CLASS_NAMES: &str = "classes";

pub(super) fn read_npy(features: &Path, labels: &Path) -> Result<Read, DatasetError> {
    let input = features_tensor(npy(features, &read_file(features)?)?, features)?;
    let labels_array = labels_vec(npy(labels, &read_file(labels)?)?, labels)?;
    Ok(Read {
        features_path: features.to_owned(),
        inputs: vec![input],
        labels_path: labels.to_owned(),
        labels: labels_array,
        classes: None,
    })
}

pub(super) fn read_npz(path: &Path) -> Result<Read, DatasetError> {
    let io_error = |error: io::Error| DatasetError::Read {
        path: path.to_owned(),
        error,
    };
    let mut archive = NpzArchive::open(path).map_err(io_error)?;
    let names: Vec<String> = archive.array_names().map(str::to_owned).collect();
    let pick = |wanted: &[&str]| {
        wanted
            .iter()
            .find(|w| names.iter().any(|n| n == *w))
            .map(|w| w.to_string())
            .ok_or_else(|| {
                DatasetError::invalid(
                    path,
                    format!(
                        "no array named {} (the archive holds: {})",
                        wanted.join(" or "),
                        names.join(", ")
                    ),
                )
            })
    };
    let (x, y) = (pick(&FEATURE_NAMES)?, pick(&LABEL_NAMES)?);
    let input = features_tensor(array(&mut archive, &x, path)?, &path.join(&x))?;
    let labels = labels_vec(array(&mut archive, &y, path)?, &path.join(&y))?;
    let classes = if names.iter().any(|n| n == CLASS_NAMES) {
        let file = array(&mut archive, CLASS_NAMES, path)?;
        let at = path.join(CLASS_NAMES);
        if file.shape().len() != 1 {
            return Err(DatasetError::invalid(&at, "must be one-dimensional"));
        }
        let strings = file
            .into_vec::<String>()
            .map_err(|e| DatasetError::invalid(&at, format!("must be strings: {e}")))?;
        Some(strings)
    } else {
        None
    };
    Ok(Read {
        features_path: path.join(&x),
        inputs: vec![input],
        labels_path: path.join(&y),
        labels,
        classes,
    })
}

/// The archive's array `name`, which it lists.
fn array<'a, R: io::Read + io::Seek>(
    archive: &'a mut NpzArchive<R>,
    name: &str,
    path: &Path,
) -> Result<NpyFile<npyz::zip::read::ZipFile<'a>>, DatasetError> {
    archive
        .by_name(name)
        .map_err(|error| DatasetError::Read {
            path: path.to_owned(),
            error,
        })
        .map(|a| a.expect("the name is listed"))
}

fn npy<'a>(path: &Path, bytes: &'a [u8]) -> Result<NpyFile<&'a [u8]>, DatasetError> {
    if bytes.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_owned(),
        });
    }
    NpyFile::new(bytes).map_err(|e| DatasetError::invalid(path, format!("not a .npy array: {e}")))
}

/// The array as one unnamed batch tensor, row-major, in its own dtype.
fn features_tensor<R: io::Read>(file: NpyFile<R>, path: &Path) -> Result<Tensor, DatasetError> {
    if file.order() != Order::C {
        return Err(DatasetError::invalid(
            path,
            "is in Fortran order; save it in C order (numpy.ascontiguousarray)",
        ));
    }
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    if shape.is_empty() {
        return Err(DatasetError::invalid(
            path,
            "is a scalar; features need a first dimension of one row per item",
        ));
    }
    let dtype = file.dtype();
    let unsupported = || {
        DatasetError::invalid(
            path,
            format!(
                "dtype {} is not one the OIP carries (bool, uint8, int8, int32, int64, float32, \
                 float64)",
                dtype_name(&dtype)
            ),
        )
    };
    let DType::Plain(ty) = &dtype else {
        return Err(unsupported());
    };
    let read = |e: io::Error| DatasetError::invalid(path, e.to_string());
    let data = match (ty.type_char(), ty.num_bytes()) {
        (TypeChar::Bool, Some(1)) => TensorData::Bool(file.into_vec().map_err(read)?),
        (TypeChar::Uint, Some(1)) => TensorData::Uint8(file.into_vec().map_err(read)?),
        (TypeChar::Int, Some(1)) => TensorData::Int8(file.into_vec().map_err(read)?),
        (TypeChar::Int, Some(4)) => TensorData::Int32(file.into_vec().map_err(read)?),
        (TypeChar::Int, Some(8)) => TensorData::Int64(file.into_vec().map_err(read)?),
        (TypeChar::Float, Some(4)) => TensorData::Fp32(file.into_vec().map_err(read)?),
        (TypeChar::Float, Some(8)) => TensorData::Fp64(file.into_vec().map_err(read)?),
        _ => return Err(unsupported()),
    };
    Ok(Tensor {
        name: String::new(),
        shape,
        data,
    })
}

/// One integer label per item, whatever the integer width.
fn labels_vec<R: io::Read>(file: NpyFile<R>, path: &Path) -> Result<Vec<i64>, DatasetError> {
    if file.shape().len() != 1 {
        return Err(DatasetError::invalid(
            path,
            format!(
                "labels must be one-dimensional, one per item; the shape is {:?}",
                file.shape()
            ),
        ));
    }
    let dtype = file.dtype();
    let read = |e: io::Error| DatasetError::invalid(path, e.to_string());
    let widen = |v: Vec<u64>| v.into_iter().map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let DType::Plain(ty) = &dtype else {
        return Err(DatasetError::invalid(path, "labels must be integers"));
    };
    Ok(match (ty.type_char(), ty.num_bytes()) {
        (TypeChar::Int, Some(1)) => widened::<i8, _>(file).map_err(read)?,
        (TypeChar::Int, Some(2)) => widened::<i16, _>(file).map_err(read)?,
        (TypeChar::Int, Some(4)) => widened::<i32, _>(file).map_err(read)?,
        (TypeChar::Int, Some(8)) => file.into_vec().map_err(read)?,
        (TypeChar::Uint, Some(1)) => widened::<u8, _>(file).map_err(read)?,
        (TypeChar::Uint, Some(2)) => widened::<u16, _>(file).map_err(read)?,
        (TypeChar::Uint, Some(4)) => widened::<u32, _>(file).map_err(read)?,
        (TypeChar::Uint, Some(8)) => widen(file.into_vec().map_err(read)?).collect(),
        _ => {
            return Err(DatasetError::invalid(
                path,
                format!(
                    "labels must be integers, the dtype is {}",
                    dtype_name(&dtype)
                ),
            ));
        }
    })
}

/// A dtype as numpy spells it, e.g. `<f4`.
fn dtype_name(dtype: &DType) -> String {
    match dtype {
        DType::Plain(ty) => ty.to_string(),
        other => other.descr(),
    }
}

fn widened<T: npyz::Deserialize + Into<i64>, R: io::Read>(
    file: NpyFile<R>,
) -> io::Result<Vec<i64>> {
    Ok(file.into_vec::<T>()?.into_iter().map(Into::into).collect())
}

#[cfg(test)]
mod tests {
    use super::super::{Dataset, Source};
    use super::*;
    use npyz::WriterBuilder;

    /// A `.npy` file of `values` with `shape`.
    fn npy_bytes<T: npyz::AutoSerialize + Copy>(shape: &[u64], values: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut out)
            .begin_nd()
            .unwrap();
        writer.extend(values.iter().copied()).unwrap();
        writer.finish().unwrap();
        out
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("idn-numpy-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn npy_features_keep_their_shape_and_dtype() {
        let dir = temp_dir("npy");
        let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
        std::fs::write(&x, npy_bytes(&[3, 2, 2], &(0..12u8).collect::<Vec<_>>())).unwrap();
        std::fs::write(&y, npy_bytes(&[3], &[1i32, 0, 1])).unwrap();
        let source = Source::Npy {
            features: &x,
            labels: &y,
        };
        let dataset = Dataset::load(source, None).unwrap();
        assert_eq!(dataset.inputs[0].shape, [3, 2, 2]);
        assert_eq!(
            dataset.item(2)[0].data,
            TensorData::Uint8(vec![8, 9, 10, 11])
        );
        assert_eq!(dataset.labels, [1, 0, 1]);
        assert_eq!(dataset.classes, ["0", "1"]);

        std::fs::write(&y, npy_bytes(&[3], &[0.5f32, 0.0, 1.0])).unwrap();
        let err = Dataset::load(source, None).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: labels must be integers, the dtype is <f4", y.display())
        );
        std::fs::write(&y, npy_bytes(&[2], &[0u64, 1])).unwrap();
        let err = Dataset::load(source, None).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} holds 3 items but {} holds 2 labels",
                x.display(),
                y.display()
            )
        );
        std::fs::write(&x, npy_bytes(&[3], &[1u16, 2, 3])).unwrap();
        let err = Dataset::load(source, None).unwrap_err().to_string();
        assert!(
            err.contains("dtype <u2 is not one the OIP carries"),
            "{err}"
        );
        std::fs::write(&x, b"not numpy").unwrap();
        let err = Dataset::load(source, None).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not a .npy array", x.display())),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn npz_arrays_are_found_by_name_with_their_classes() {
        let dir = temp_dir("npz");
        let path = dir.join("sample.npz");
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        let options = npyz::zip::write::FileOptions::default;
        let mut w = npz
            .array::<f64>("features", options())
            .unwrap()
            .default_dtype()
            .shape(&[2, 3])
            .begin_nd()
            .unwrap();
        w.extend([0.0, 0.5, 1.0, 1.5, 2.0, 2.5]).unwrap();
        w.finish().unwrap();
        let mut w = npz
            .array::<i64>("labels", options())
            .unwrap()
            .default_dtype()
            .shape(&[2])
            .begin_nd()
            .unwrap();
        w.extend([1, 0]).unwrap();
        w.finish().unwrap();
        let mut w = npz
            .array::<String>("classes", options())
            .unwrap()
            .dtype(DType::Plain("<U3".parse().unwrap()))
            .shape(&[2])
            .begin_nd()
            .unwrap();
        w.extend(["cat", "dog"].map(String::from)).unwrap();
        w.finish().unwrap();
        drop(npz);
        let dataset = Dataset::load(Source::Npz(&path), None).unwrap();
        assert_eq!(dataset.classes, ["cat", "dog"]);
        assert_eq!(dataset.labels, [1, 0]);
        assert_eq!(
            dataset.item(1)[0].data,
            TensorData::Fp64(vec![1.5, 2.0, 2.5])
        );
        // --classes overrides the archive's names.
        let classes = Some(vec!["a".to_owned()]);
        let err = Dataset::load(Source::Npz(&path), classes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("label 1 of item 0 is not one of the 1 classes"),
            "{err}"
        );

        let other = dir.join("other.npz");
        let mut npz = npyz::npz::NpzWriter::create(&other).unwrap();
        let mut w = npz
            .array::<f32>("images", options())
            .unwrap()
            .default_dtype()
            .shape(&[1])
            .begin_nd()
            .unwrap();
        w.extend([0.0]).unwrap();
        w.finish().unwrap();
        drop(npz);
        let err = Dataset::load(Source::Npz(&other), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: no array named x or features (the archive holds: images)",
                other.display()
            )
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
