// Package apidoc holds the checks of docs/api.yaml, the OpenAPI description
// of firewatch's HTTP API (issue 18): that it is valid OpenAPI of the version
// it declares, that it describes every route firewatch serves and nothing
// more, and that real answers match its schemas. Only tests import it.
package apidoc
