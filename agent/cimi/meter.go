package cimi

import (
	"encoding/xml"
	"time"
)

// MeterConfiguration describes what a Meter measures.
type MeterConfiguration struct {
	XMLName xml.Name `json:"-" xml:"MeterConfiguration"`
	Common
	AssociatedTo     []string    `json:"associatedTo,omitempty" xml:"associatedTo,omitempty"`
	Aspect           string      `json:"aspect,omitempty" xml:"aspect,omitempty"`
	Units            string      `json:"units,omitempty" xml:"units,omitempty"`
	SampleInterval   int         `json:"sampleInterval,omitempty" xml:"sampleInterval,omitempty"`
	TimeScope        string      `json:"timeScope,omitempty" xml:"timeScope,omitempty"`
	IntervalDuration string      `json:"intervalDuration,omitempty" xml:"intervalDuration,omitempty"`
	IsContinuous     bool        `json:"isContinuous" xml:"isContinuous"`
	Operations       []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra            Extra       `json:"-" xml:",any"`
}

// Meter measures one aspect of one resource over time.
type Meter struct {
	XMLName xml.Name `json:"-" xml:"Meter"`
	Common
	TargetResource   *Ref        `json:"targetResource,omitempty" xml:"targetResource,omitempty"`
	Aspect           string      `json:"aspect,omitempty" xml:"aspect,omitempty"`
	Units            string      `json:"units,omitempty" xml:"units,omitempty"`
	SampleInterval   int         `json:"sampleInterval,omitempty" xml:"sampleInterval,omitempty"`
	TimeScope        string      `json:"timeScope,omitempty" xml:"timeScope,omitempty"`
	IntervalDuration string      `json:"intervalDuration,omitempty" xml:"intervalDuration,omitempty"`
	IsContinuous     bool        `json:"isContinuous" xml:"isContinuous"`
	Samples          *Ref        `json:"samples,omitempty" xml:"samples,omitempty"`
	MinValue         *float64    `json:"minValue,omitempty" xml:"minValue,omitempty"`
	MaxValue         *float64    `json:"maxValue,omitempty" xml:"maxValue,omitempty"`
	Operations       []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra            Extra       `json:"-" xml:",any"`
}

// Sample is one measured value.
type Sample struct {
	XMLName   xml.Name   `json:"-" xml:"Sample"`
	Timestamp *time.Time `json:"timestamp" xml:"timestamp"`
	Value     float64    `json:"value" xml:"value"`
}

// MeterTemplateInput names the target and configuration of a new Meter.
type MeterTemplateInput struct {
	Href           string `json:"href,omitempty" xml:"href,attr,omitempty"`
	ResourceURI    string `json:"resourceURI,omitempty" xml:"-"`
	TargetResource *Ref   `json:"targetResource,omitempty" xml:"targetResource,omitempty"`
	MeterConfig    *Ref   `json:"meterConfig,omitempty" xml:"meterConfig,omitempty"`
	Extra          Extra  `json:"-" xml:",any"`
}

// MeterCreate is the body of a Meter create.
type MeterCreate struct {
	XMLName       xml.Name            `json:"-"`
	ResourceURI   string              `json:"resourceURI,omitempty" xml:"-"`
	Name          string              `json:"name,omitempty" xml:"name,omitempty"`
	Description   string              `json:"description,omitempty" xml:"description,omitempty"`
	Properties    Properties          `json:"properties,omitempty" xml:"property,omitempty"`
	MeterTemplate *MeterTemplateInput `json:"meterTemplate" xml:"meterTemplate"`
	Extra         Extra               `json:"-" xml:",any"`
}
