//! CPU kernels written here where candle's general ones cost more than the
//! work they do.

mod attention;
mod q4_1;
mod row_move;

pub(crate) use attention::{KvPart, grouped_attention};
pub(crate) use q4_1::Q4_1Tiles;
pub(crate) use row_move::{PairRotation, RowMove, move_rows};
