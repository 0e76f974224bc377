//! Helpers for tests that walk over every operation of the OpenAPI document, so that a route
//! added later is covered too.

use reqwest::Method;
use serde_json::{Value, json};

/// Every operation: (method, path template, the operation).
pub fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            found.push((method, path.clone(), operation.clone()));
        }
    }
    found
}

/// The path with every parameter filled with `value`.
pub fn fill(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A plausible JSON body for an operation: its example when the document gives one, else an
/// object with a string for each property of its schema.
pub fn body_for(doc: &Value, operation: &Value) -> Option<Value> {
    let content = &operation["requestBody"]["content"]["application/json"];
    if content.is_null() {
        return None;
    }
    let mut schema = &content["schema"];
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        schema = &doc["components"]["schemas"][name];
    }
    if !schema["example"].is_null() {
        return Some(schema["example"].clone());
    }
    let mut body = serde_json::Map::new();
    for name in schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        body.insert(name, json!("text"));
    }
    Some(Value::Object(body))
}
