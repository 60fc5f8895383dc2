package cimi

import (
	"encoding/xml"
	"time"
)

// EventLog is the history of one resource.
type EventLog struct {
	XMLName xml.Name `json:"-" xml:"EventLog"`
	Common
	TargetResource *Ref          `json:"targetResource,omitempty" xml:"targetResource,omitempty"`
	Events         *Ref          `json:"events,omitempty" xml:"events,omitempty"`
	Persistence    string        `json:"persistence,omitempty" xml:"persistence,omitempty"`
	Summary        *EventSummary `json:"summary,omitempty" xml:"summary,omitempty"`
	Operations     []Operation   `json:"operations,omitempty" xml:"operation,omitempty"`
}

// EventSummary counts a log's events by severity.
type EventSummary struct {
	Low      int `json:"low" xml:"low"`
	Medium   int `json:"medium" xml:"medium"`
	High     int `json:"high" xml:"high"`
	Critical int `json:"critical" xml:"critical"`
}

// Event is one entry of an EventLog.
type Event struct {
	XMLName xml.Name `json:"-" xml:"Event"`
	Common
	Timestamp  *time.Time    `json:"timestamp,omitempty" xml:"timestamp,omitempty"`
	Type       string        `json:"type" xml:"type"`
	Content    *EventContent `json:"content,omitempty" xml:"content,omitempty"`
	Outcome    string        `json:"outcome,omitempty" xml:"outcome,omitempty"`
	Severity   string        `json:"severity,omitempty" xml:"severity,omitempty"`
	Operations []Operation   `json:"operations,omitempty" xml:"operation,omitempty"`
}

// EventContent carries what the event is about; which fields are set
// depends on its type.
type EventContent struct {
	ResName  string `json:"resName,omitempty" xml:"resName,omitempty"`
	Resource *Ref   `json:"resource,omitempty" xml:"resource,omitempty"`
	ResType  string `json:"resType,omitempty" xml:"resType,omitempty"`
	State    string `json:"state,omitempty" xml:"state,omitempty"`
	Previous string `json:"previous,omitempty" xml:"previous,omitempty"`
	Change   string `json:"change,omitempty" xml:"change,omitempty"`
	Detail   string `json:"detail,omitempty" xml:"detail,omitempty"`
}
