//! Tensors as the Open Inference Protocol carries them: a name, a shape, a datatype and flat
//! row-major data. One enum variant per supported datatype keeps the data typed end to end, from
//! JSON or binary decoding to ONNX Runtime and back.

use std::fmt;

/// Generates [`DataType`] and [`TensorData`] from one list, so that a datatype is added in one
/// place: (variant, OIP name, Rust element type).
macro_rules! datatypes {
    ($(($variant:ident, $oip:literal, $elem:ty)),+ $(,)?) => {
        /// An OIP tensor datatype supported by the agent.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DataType {
            $($variant),+
        }

        impl DataType {
            /// Every supported datatype, in OIP spelling, for error messages.
            pub(crate) const SUPPORTED: &'static str = concat!($($oip, " "),+);

            /// The OIP name, e.g. `FP32`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DataType::$variant => $oip),+
                }
            }

            /// Parses an OIP datatype name.
            pub(crate) fn parse(name: &str) -> Option<Self> {
                match name {
                    $($oip => Some(DataType::$variant),)+
                    _ => None,
                }
            }

            /// Bytes per element in the binary tensor data extension.
            pub(crate) fn element_size(self) -> usize {
                match self {
                    $(DataType::$variant => std::mem::size_of::<$elem>()),+
                }
            }
        }

        /// Flat row-major tensor data, typed.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $($variant(Vec<$elem>)),+
        }

        impl TensorData {
            /// The datatype of the elements.
            pub fn datatype(&self) -> DataType {
                match self {
                    $(TensorData::$variant(_) => DataType::$variant),+
                }
            }

            /// Number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(TensorData::$variant(v) => v.len()),+
                }
            }

            /// Whether the tensor holds no element.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Decodes little-endian binary data (the OIP binary tensor extension).
            pub(crate) fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Option<Self> {
                if bytes.len() % datatype.element_size() != 0 {
                    return None;
                }
                Some(match datatype {
                    $(DataType::$variant => TensorData::$variant(
                        bytes
                            .chunks_exact(std::mem::size_of::<$elem>())
                            .map(<$elem as LeBytes>::read)
                            .collect(),
                    )),+
                })
            }

            /// Appends the data as little-endian bytes.
            pub(crate) fn write_le_bytes(&self, out: &mut Vec<u8>) {
                match self {
                    $(TensorData::$variant(v) => {
                        out.reserve(v.len() * std::mem::size_of::<$elem>());
                        v.iter().for_each(|x| <$elem as LeBytes>::write(*x, out));
                    }),+
                }
            }

            /// The chunks of `chunk` elements at `rows`, in that order.
            fn select_chunks(&self, chunk: usize, rows: &[usize]) -> Self {
                match self {
                    $(TensorData::$variant(v) => TensorData::$variant(
                        rows.iter().flat_map(|&r| &v[r * chunk..(r + 1) * chunk]).copied().collect(),
                    )),+
                }
            }

            /// Appends `other`'s elements; false, appending nothing, when the datatypes differ.
            pub fn append(&mut self, other: &TensorData) -> bool {
                match (self, other) {
                    $((TensorData::$variant(v), TensorData::$variant(o)) => {
                        v.extend_from_slice(o);
                        true
                    })+
                    _ => false,
                }
            }

            /// An empty vector of the given datatype, with room for `capacity` elements.
            pub(crate) fn with_capacity(datatype: DataType, capacity: usize) -> Self {
                match datatype {
                    $(DataType::$variant => TensorData::$variant(Vec::with_capacity(capacity))),+
                }
            }
        }
    };
}

datatypes! {
    (Bool, "BOOL", bool),
    (Uint8, "UINT8", u8),
    (Int8, "INT8", i8),
    (Int32, "INT32", i32),
    (Int64, "INT64", i64),
    (Fp32, "FP32", f32),
    (Fp64, "FP64", f64),
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Little-endian conversion of one element; `bool` is one byte, non-zero meaning true.
trait LeBytes: Sized {
    fn read(bytes: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! le_bytes_numeric {
    ($($t:ty),+) => {$(
        impl LeBytes for $t {
            fn read(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("chunk has the element size"))
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )+};
}
le_bytes_numeric!(u8, i8, i32, i64, f32, f64);

impl LeBytes for bool {
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// A named tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Number of elements the shape calls for.
    pub(crate) fn shape_elements(shape: &[usize]) -> Option<usize> {
        shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Size of the first dimension (the batch), 1 for a scalar.
    pub(crate) fn batch_size(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// The batch items at `rows` (indices into the first dimension), in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Tensor {
        let batch = self.batch_size();
        let chunk = self.data.len().checked_div(batch).unwrap_or(0);
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = rows.len();
        }
        Tensor {
            name: self.name.clone(),
            shape,
            data: self.data.select_chunks(chunk, rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_round_trip_for_every_datatype() {
        let cases = [
            TensorData::Bool(vec![true, false, true]),
            TensorData::Uint8(vec![0, 7, 255]),
            TensorData::Int8(vec![-128, 0, 127]),
            TensorData::Int32(vec![-1, 0, i32::MAX]),
            TensorData::Int64(vec![i64::MIN, 3]),
            TensorData::Fp32(vec![0.5, -1.25, f32::MAX]),
            TensorData::Fp64(vec![std::f64::consts::PI]),
        ];
        for data in cases {
            let mut bytes = Vec::new();
            data.write_le_bytes(&mut bytes);
            assert_eq!(bytes.len(), data.len() * data.datatype().element_size());
            let back = TensorData::from_le_bytes(data.datatype(), &bytes).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn binary_data_of_a_partial_element_is_rejected() {
        assert!(TensorData::from_le_bytes(DataType::Fp32, &[0, 0, 0]).is_none());
    }

    #[test]
    fn datatype_names_round_trip() {
        for name in DataType::SUPPORTED.split_whitespace() {
            assert_eq!(DataType::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(DataType::parse("BYTES"), None);
    }

    #[test]
    fn select_rows_keeps_the_asked_order() {
        let t = Tensor {
            name: "x".into(),
            shape: vec![3, 2],
            data: TensorData::Int32(vec![0, 1, 10, 11, 20, 21]),
        };
        let picked = t.select_rows(&[2, 0]);
        assert_eq!(picked.shape, [2, 2]);
        assert_eq!(picked.data, TensorData::Int32(vec![20, 21, 0, 1]));
        assert_eq!(t.select_rows(&[]).shape, [0, 2]);
    }

    #[test]
    fn shape_elements_detects_overflow() {
        assert_eq!(Tensor::shape_elements(&[2, 784]), Some(1568));
        assert_eq!(Tensor::shape_elements(&[]), Some(1));
        assert_eq!(Tensor::shape_elements(&[usize::MAX, 2]), None);
    }
}
