package alarms

import (
	"errors"
	"fmt"
	"time"
)

// Settings is the alarms section of the firewatch configuration file: the
// keys as an operator writes them. Its YAML keys, help texts and secret
// marks make the section's keys, flags (-alarms.secret), environment
// variables (FIREWATCH_ALARMS_SECRET) and docs/config.md rows. Config
// turns it into the Manager's Config.
type Settings struct {
	DB              string        `yaml:"db" help:"SQLite file of the alarm store and outbox, or a postgres:// URL" secret:"true"`
	Secret          string        `yaml:"secret" help:"HMAC-SHA256 key that signs dispatch pushes, at least 16 characters; each receiver gets a key derived from it (firewatch push-key)" secret:"true"`
	SecretPrevious  string        `yaml:"secret_previous" help:"the previous alarms.secret while it is being rotated: pushes are signed with both" secret:"true"`
	LegacySignature bool          `yaml:"legacy_signature" help:"also send the v1 signature keyed with alarms.secret itself, for receivers not yet given their own key; turn off once all verify v2"`
	BrigadeEndpoint string        `yaml:"brigade_endpoint" help:"dispatch webhook of the fire rescue brigade (消防救援大队); fire alarms also go here"`
	RetryMin        time.Duration `yaml:"retry_min" help:"first retry delay of a failed push"`
	RetryMax        time.Duration `yaml:"retry_max" help:"longest retry delay of a failed push"`
	RespondWithin   time.Duration `yaml:"respond_within" help:"an alarm nobody acknowledged within this is escalated to the next level and re-pushed"`
	StormWindow     time.Duration `yaml:"storm_window" help:"a station's alarms this close together are grouped into one incident push; 0s: no grouping"`
	StormHold       time.Duration `yaml:"storm_hold" help:"an incident push waits until no alarm joined for this long"`
	Robots          string        `yaml:"robots" help:"WeCom/DingTalk group robots, comma-separated grid=kind:url[#secret] (kind wecom or dingtalk)" secret:"true"`
	CommandRetry    time.Duration `yaml:"command_retry" help:"a linkage command (cut_power) unacknowledged this long is sent again, 3 times in all"`
	Digest          string        `yaml:"digest" help:"schedule of the digests (预警提示) to the robots of towns and counties: daily, weekly, monthly or off"`
	DigestAt        time.Duration `yaml:"digest_at" help:"a digest goes out this long after its period ends at midnight CST (8h: 08:00)"`
	// SMS and voice to a detector's responsible person (sms.go, docs/nbiot.md).
	SMSGateway  string `yaml:"sms_gateway" help:"SMS/voice gateway webhook: a fire of a device whose ledger entry names a mobile (nbiot.mobile) goes there as an SMS and a voice call, other alarms as an SMS; empty: none" secret:"true"`
	SMSTemplate string `yaml:"sms_template" help:"JSON body template of a gateway message (Go text/template over .Mobile .Name .Channel .Text .AlarmID .Severity .Device .Address; json quotes); empty: the generic one"`
}

// DefaultSettings returns the alarms section's defaults.
func DefaultSettings() Settings {
	return Settings{
		DB:              "var/alarms.db",
		RetryMin:        DefaultRetryMin,
		RetryMax:        DefaultRetryMax,
		RespondWithin:   DefaultRespondWithin,
		StormWindow:     DefaultStormWindow,
		StormHold:       DefaultStormHold,
		CommandRetry:    DefaultCommandRetry,
		LegacySignature: true,
		Digest:          DigestMonthly,
		DigestAt:        DefaultDigestAt,
	}
}

// Validate returns every problem with the section, each named by its key.
func (s Settings) Validate() error {
	var errs []error
	if s.Secret == "" {
		errs = append(errs, errors.New("alarms.secret: set a signing key for dispatch pushes (FIREWATCH_ALARMS_SECRET)"))
	} else if len(s.Secret) < MinSecretLen {
		errs = append(errs, fmt.Errorf("alarms.secret: at least %d characters (a random one: openssl rand -hex 32)", MinSecretLen))
	}
	if p := s.SecretPrevious; p != "" && (len(p) < MinSecretLen || p == s.Secret) {
		errs = append(errs, fmt.Errorf("alarms.secret_previous: at least %d characters, and not alarms.secret", MinSecretLen))
	}
	if s.RetryMin <= 0 || s.RetryMax < s.RetryMin {
		errs = append(errs, errors.New("alarms: retry_min must be positive and retry_max at least retry_min"))
	}
	if s.RespondWithin <= 0 {
		errs = append(errs, errors.New("alarms.respond_within must be positive"))
	}
	if _, err := s.robots(); err != nil {
		errs = append(errs, err)
	}
	if !ValidDigest(s.Digest) {
		errs = append(errs, fmt.Errorf("alarms.digest: %q is not daily, weekly, monthly or off", s.Digest))
	}
	if s.DigestAt <= 0 || s.DigestAt >= 24*time.Hour {
		errs = append(errs, errors.New("alarms.digest_at must be within a day (1s to 23h59m)"))
	}
	if _, err := s.sms(); err != nil {
		errs = append(errs, err)
	}
	if s.CommandRetry <= 0 {
		errs = append(errs, errors.New("alarms.command_retry must be positive"))
	}
	if s.StormWindow < 0 || s.StormHold <= 0 {
		errs = append(errs, errors.New("alarms: storm_window must not be negative, storm_hold must be positive"))
	}
	return errors.Join(errs...)
}

// Config turns the section into a Manager's Config: the robots parsed, the
// secrets as keys, legacy_signature as NoLegacySignature, the SMS gateway
// built, and storm_window's "0s: no grouping" as a negative StormWindow.
// The caller adds the runtime parts (Publish, Logger, Tokens, callbacks).
func (s Settings) Config() (Config, error) {
	robots, err := s.robots()
	if err != nil {
		return Config{}, err
	}
	sms, err := s.sms()
	if err != nil {
		return Config{}, err
	}
	window := s.StormWindow
	if window == 0 {
		window = -1
	}
	return Config{
		DBPath: s.DB, Secret: []byte(s.Secret), SecretPrevious: []byte(s.SecretPrevious),
		NoLegacySignature: !s.LegacySignature, BrigadeEndpoint: s.BrigadeEndpoint,
		RetryMin: s.RetryMin, RetryMax: s.RetryMax, RespondWithin: s.RespondWithin,
		StormWindow: window, StormHold: s.StormHold, CommandRetry: s.CommandRetry,
		Robots: robots, SMS: sms, Digest: s.Digest, DigestAt: s.DigestAt,
	}, nil
}

func (s Settings) robots() ([]Robot, error) {
	r, err := ParseRobots(s.Robots)
	if err != nil {
		return nil, fmt.Errorf("alarms.robots: %w", err)
	}
	return r, nil
}

// sms returns the SMS gateway, nil when none is configured.
func (s Settings) sms() (*SMSGateway, error) {
	if s.SMSGateway == "" {
		return nil, nil
	}
	g, err := NewSMSGateway(s.SMSGateway, s.SMSTemplate)
	if err != nil {
		return nil, fmt.Errorf("alarms.sms_gateway: %w", err)
	}
	return g, nil
}
