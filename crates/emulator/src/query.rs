//! IoT Hub's query language as the emulator uses it: answering `SELECT ... FROM devices[.modules]`
//! queries (`pager`) and matching configuration target conditions (`configuration`).
//!
//! The grammar and the evaluation rules live in [`twinops_iothub::query`], where the manifest loader
//! checks target conditions and metric queries with the same grammar; this module keeps the paths
//! the emulator (and its fuzz harness) have always used.

pub use twinops_iothub::query::{
    Check, Collection, CompareOp, Condition, Expr, Operand, ParseError, Projection, Query, Select,
    TextTest, is_target_path, parse, parse_condition,
};
