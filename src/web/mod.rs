//! actix-web: routes per audience (participant, api, admin), extractors, errors mapped to responses.
