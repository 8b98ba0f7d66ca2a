//! A table's columns: their declaration (name, type, nullability, encoding hint), the Arrow
//! schema they make, and Arrow builders filled one row at a time.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The Arrow types the export uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `utf8`
    Str,
    /// `int64`
    I64,
    /// `float64`
    F64,
    /// `bool`
    Bool,
    /// `timestamp[us, tz=UTC]`
    Ts,
    /// `list<item: utf8 not null>`
    StrList,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Str => DataType::Utf8,
            Kind::I64 => DataType::Int64,
            Kind::F64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    /// Dictionary-encode in Parquet: on for columns with few distinct values.
    pub dictionary: bool,
    pub doc: &'static str,
}

/// A required column, not dictionary-encoded.
pub const fn req(name: &'static str, kind: Kind, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        dictionary: false,
        doc,
    }
}

/// A nullable column, not dictionary-encoded.
pub const fn opt(name: &'static str, kind: Kind, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        dictionary: false,
        doc,
    }
}

impl Column {
    /// The same column, dictionary-encoded.
    pub const fn dict(self) -> Column {
        Column {
            dictionary: true,
            ..self
        }
    }
}

pub fn schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.kind.data_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

enum Builder {
    Str(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    StrList(ListBuilder<StringBuilder>),
}

impl Builder {
    /// A builder with room for `rows` values and `bytes` bytes of strings, so that filling
    /// it does not copy as it grows.
    fn with_capacity(kind: Kind, rows: usize, bytes: usize) -> Builder {
        match kind {
            Kind::Str => Builder::Str(StringBuilder::with_capacity(rows, bytes)),
            Kind::I64 => Builder::I64(Int64Builder::with_capacity(rows)),
            Kind::F64 => Builder::F64(Float64Builder::with_capacity(rows)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Ts => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            Kind::StrList => Builder::StrList(
                ListBuilder::with_capacity(StringBuilder::with_capacity(rows, bytes), rows)
                    .with_field(Field::new("item", DataType::Utf8, false)),
            ),
        }
    }

    /// Bytes of string data held.
    fn bytes(&self) -> usize {
        match self {
            Builder::Str(b) => b.values_slice().len(),
            Builder::StrList(b) => b.values_ref().values_slice().len(),
            _ => 0,
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::StrList(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Str(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Ts(b) => b.len(),
            Builder::StrList(b) => b.len(),
        }
    }
}

/// Rows being gathered into one Arrow record batch. Values are given column by column, in
/// declaration order; [`Rows::end_row`] closes a row. A value of the wrong type for its
/// column is a programming error (every table is exercised by the tests) and panics.
pub struct Rows {
    schema: SchemaRef,
    columns: &'static [Column],
    builders: Vec<Builder>,
    col: usize,
    rows: usize,
    /// Reused for values written as text (JSON) before they are appended.
    scratch: Vec<u8>,
}

macro_rules! setter {
    ($name:ident, $variant:ident, $ty:ty, |$b:ident, $v:ident| $append:expr) => {
        pub fn $name(&mut self, $v: $ty) -> &mut Self {
            let i = self.col;
            match &mut self.builders[i] {
                Builder::$variant($b) => $append,
                _ => panic!(
                    "export column {} is {:?}, not {}",
                    self.columns[i].name,
                    self.columns[i].kind,
                    stringify!($variant)
                ),
            }
            self.col += 1;
            self
        }
    };
}

impl Rows {
    pub fn new(columns: &'static [Column]) -> Rows {
        Rows {
            schema: schema(columns),
            columns,
            builders: columns
                .iter()
                .map(|c| Builder::with_capacity(c.kind, 1024, 0))
                .collect(),
            col: 0,
            rows: 0,
            scratch: Vec::new(),
        }
    }

    /// A string value written by `write` (which must write UTF-8), or null when it
    /// returns false.
    pub fn str_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> &mut Self {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let present = write(&mut buf);
        match (present, std::str::from_utf8(&buf)) {
            (true, Ok(s)) => self.str(Some(s)),
            _ => self.str(None),
        };
        self.scratch = buf;
        self
    }

    setter!(str, Str, Option<&str>, |b, v| b.append_option(v));
    setter!(i64, I64, Option<i64>, |b, v| b.append_option(v));
    setter!(f64, F64, Option<f64>, |b, v| b.append_option(v));
    setter!(bool, Bool, Option<bool>, |b, v| b.append_option(v));
    setter!(ts, Ts, Option<i64>, |b, v| b.append_option(v));
    setter!(list, StrList, Option<&[String]>, |b, v| match v {
        Some(items) => {
            for s in items {
                b.values().append_value(s);
            }
            b.append(true);
        }
        None => b.append(false),
    });

    /// Close the current row.
    pub fn end_row(&mut self) {
        assert_eq!(
            self.col,
            self.builders.len(),
            "an export row must give every column"
        );
        self.col = 0;
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The gathered rows as a record batch; the builders start over.
    pub fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        debug_assert!(self.builders.iter().all(|b| b.len() == self.rows));
        let rows = self.rows;
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .zip(self.columns)
            .map(|(b, c)| {
                // The next batch is likely the same size: start it with this one's room.
                let room = Builder::with_capacity(c.kind, rows, b.bytes() + b.bytes() / 8);
                std::mem::replace(b, room).finish()
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}
