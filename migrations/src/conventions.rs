//! The naming conventions every migration follows: foreign keys `fk-<table>-<column>` that
//! cascade deletes from the parent, and indexes `idx-<table>-<columns>`. Only names and shapes
//! live here, so older migrations keep producing the same schema.

use sea_orm_migration::prelude::*;

/// A foreign key named `fk-<table>-<column>`, cascading deletes from the parent's `id`.
pub fn foreign_key(
    table: &'static str,
    column: &'static str,
    parent: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk-{table}-{column}"))
        .from(table, column)
        .to(parent, "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// An index named `idx-<table>-<column>-<column>...`.
pub fn index(table: &'static str, columns: &[&'static str]) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement
        .name(format!("idx-{table}-{}", columns.join("-")))
        .table(table);
    for column in columns {
        statement.col(*column);
    }
    statement.to_owned()
}
