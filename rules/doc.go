// Package rules holds the rule configuration, its validation, its
// compilation into lookup tables indexed by device kind and metric, and the
// evaluator that runs on the hot path for every reading. A rule that starts
// or stops firing produces an Event for the alarm manager; nothing else
// leaves the hot path.
package rules
