//! Typed tensor data from JSON: a flat or nested array of numbers or booleans, each checked
//! against the tensor's datatype while it is parsed.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::tensor::{DataType, TensorData};

/// Elements to reserve for a declared shape; bounded, because the shape is the client's word
/// and the body limit, not the shape, bounds what arrives.
fn capacity_hint(shape: &[i64]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .unwrap_or(0)
        .min(MAX_RESERVED)
}

/// Most elements reserved ahead of parsing.
const MAX_RESERVED: usize = 1 << 20;

/// Typed data of one tensor, flat or nested to any depth.
pub(super) struct TypedData {
    datatype: DataType,
    capacity: usize,
}

impl TypedData {
    /// Data of `datatype` for a tensor of the declared `shape`, when it came before the data.
    pub(super) fn for_shape(datatype: DataType, shape: Option<&[i64]>) -> Self {
        TypedData {
            datatype,
            capacity: shape.map_or(0, capacity_hint),
        }
    }
}

/// Data kept raw because it came before its datatype, decoded now that the datatype is known.
pub(super) fn decode_raw(
    raw: &RawValue,
    datatype: DataType,
    elements: usize,
) -> serde_json::Result<TensorData> {
    let typed = TypedData {
        datatype,
        capacity: elements.min(MAX_RESERVED),
    };
    typed.deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
}

impl<'de> DeserializeSeed<'de> for TypedData {
    type Value = TensorData;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<TensorData, D::Error> {
        let mut data = TensorData::with_capacity(self.datatype, self.capacity);
        macro_rules! flatten {
            ($($variant:ident),+) => {
                match &mut data {
                    $(TensorData::$variant(v) => FlattenInto(v).deserialize(deserializer),)+
                }
            };
        }
        flatten!(Bool, Uint8, Int8, Int32, Int64, Fp32, Fp64)
            .map_err(|e| de::Error::custom(format_args!("data: {e}")))?;
        Ok(data)
    }
}

/// Pushes every scalar of a (possibly nested) JSON array into a vector, checking each against
/// the element type (an out-of-range or fractional integer is an error, not a silent cast).
struct FlattenInto<'v, T>(&'v mut Vec<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for FlattenInto<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> FlattenInto<'_, T> {
    fn push<E: de::Error, V: IntoDeserializer<'de, E>>(self, value: V) -> Result<(), E> {
        self.0.push(T::deserialize(value.into_deserializer())?);
        Ok(())
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for FlattenInto<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers or booleans")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlattenInto(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(v)
    }
}
