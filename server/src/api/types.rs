//! Calendar dates and wall-clock times in the spec's standard shapes. poem-openapi describes
//! chrono's `NaiveDate` and `NaiveTime` with its own formats (`naive-date`, `naive-time`) that
//! client generators do not know; these wrappers say `format: date` (RFC 3339 full-date) and a
//! documented `HH:MM:SS` pattern, and parse and print exactly what chrono does.

use std::{borrow::Cow, str::FromStr};

use chrono::{NaiveDate, NaiveTime};
use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// What a local time looks like on the wire: `HH:MM:SS` (answers), `HH:MM` also accepted.
pub const LOCAL_TIME_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$";

macro_rules! text_type {
    ($(#[$meta:meta])* $name:ident($inner:ty), $schema_name:literal, $schema:expr, $parse:expr, $print:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $schema_name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(
                &'a self,
            ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value.unwrap_or_default() {
                    Value::String(text) => Ok(Self($parse(&text)?)),
                    other => Err(ParseError::expected_type(other)),
                }
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String($print(&self.0)))
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }
    };
}

text_type!(
    /// A calendar date, `YYYY-MM-DD`.
    LocalDate(NaiveDate),
    "string_date",
    MetaSchema::new_with_format("string", "date"),
    NaiveDate::from_str,
    |date: &NaiveDate| date.format("%Y-%m-%d").to_string()
);

text_type!(
    /// A wall-clock time in a named zone (the cohort's), `HH:MM:SS`.
    LocalTime(NaiveTime),
    "string_local_time",
    MetaSchema {
        pattern: Some(LOCAL_TIME_PATTERN.to_owned()),
        description: Some("a local time, HH:MM:SS"),
        example: Some(Value::String("09:30:00".to_owned())),
        ..MetaSchema::new("string")
    },
    |text: &str| NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M")),
    |time: &NaiveTime| time.format("%H:%M:%S").to_string()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_print_as_they_parse_and_as_the_pattern_says() {
        let date = LocalDate::parse_from_json(Some(Value::String("2027-03-09".into()))).unwrap();
        assert_eq!(date.to_json(), Some(Value::String("2027-03-09".into())));
        let time = LocalTime::parse_from_json(Some(Value::String("09:30:00".into()))).unwrap();
        let printed = time.to_json().unwrap();
        assert_eq!(printed, Value::String("09:30:00".into()));
        let short = LocalTime::parse_from_json(Some(Value::String("09:30".into()))).unwrap();
        assert_eq!(short, time);
        // Fractions of a second are not a wall-clock time a trainer sets.
        assert!(LocalTime::parse_from_json(Some(Value::String("09:30:00.5".into()))).is_err());
        assert!(LocalTime::parse_from_json(Some(Value::String("24:00:00".into()))).is_err());
        assert!(LocalDate::parse_from_json(Some(Value::String("9-3-2027".into()))).is_err());
        assert!(LocalTime::parse_from_json(Some(Value::from(930))).is_err());
        assert_eq!(
            <LocalDate as Type>::schema_ref().unwrap_inline().format,
            Some("date")
        );
    }
}
