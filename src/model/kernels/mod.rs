//! CPU kernels written here where candle's general ones cost more than the
//! work they do.

mod attention;

pub(crate) use attention::{KvPart, grouped_attention};
