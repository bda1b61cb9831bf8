//! CPU kernels written here where candle's general ones cost more than the
//! work they do.

mod attention;
mod choice;
mod quant_tiles;
mod row_move;
mod swiglu;
mod threads;

pub(crate) use attention::{KvPart, grouped_attention};
pub use choice::{KERNEL_ENV, Kernel};
pub(crate) use quant_tiles::QuantTiles;
pub(crate) use row_move::{PairRotation, RowMove, move_rows};
pub(crate) use swiglu::swiglu;
pub use threads::{others_keep_every_core_busy, serial, set_serial};
