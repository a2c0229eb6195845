package alarms

import (
	"strings"
	"testing"
	"time"
)

func TestSettingsDefaults(t *testing.T) {
	s := DefaultSettings()
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "alarms.secret: set a signing key") {
		t.Fatalf("defaults without a secret: %v", err)
	}
	s.Secret = "0123456789abcdef"
	if err := s.Validate(); err != nil {
		t.Fatalf("defaults with a secret: %v", err)
	}
	c, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.DBPath != "var/alarms.db" || string(c.Secret) != s.Secret || len(c.SecretPrevious) != 0 || c.NoLegacySignature ||
		c.RetryMin != DefaultRetryMin || c.RetryMax != DefaultRetryMax || c.StormWindow != DefaultStormWindow ||
		c.Digest != DigestMonthly || c.DigestAt != DefaultDigestAt || c.Robots != nil || c.SMS != nil {
		t.Fatalf("Config() = %+v", c)
	}
}

// TestSettingsConfig: the keys that are text become their runtime values.
func TestSettingsConfig(t *testing.T) {
	s := DefaultSettings()
	s.Secret, s.SecretPrevious = "0123456789abcdef", "fedcba9876543210"
	s.LegacySignature = false
	s.StormWindow = 0 // 0s: no grouping
	s.Robots = "3301=wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
	s.SMSGateway = "https://sms.example/send"
	c, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if !c.NoLegacySignature || c.StormWindow >= 0 || string(c.SecretPrevious) != s.SecretPrevious || len(c.Robots) != 1 || c.SMS == nil {
		t.Fatalf("Config() = %+v", c)
	}
}

func TestSettingsErrors(t *testing.T) {
	for _, tt := range []struct {
		set  func(*Settings)
		want string
	}{
		{func(s *Settings) { s.Secret = "short" }, "alarms.secret: at least 16 characters"},
		{func(s *Settings) { s.SecretPrevious = s.Secret }, "alarms.secret_previous: at least 16 characters, and not alarms.secret"},
		{func(s *Settings) { s.RetryMax = time.Millisecond }, "alarms: retry_min must be positive and retry_max at least retry_min"},
		{func(s *Settings) { s.RespondWithin = 0 }, "alarms.respond_within must be positive"},
		{func(s *Settings) { s.Robots = "nonsense" }, "alarms.robots: "},
		{func(s *Settings) { s.Digest = "hourly" }, `alarms.digest: "hourly" is not daily, weekly, monthly or off`},
		{func(s *Settings) { s.DigestAt = 24 * time.Hour }, "alarms.digest_at must be within a day"},
		{func(s *Settings) { s.SMSGateway = "ftp://x" }, "alarms.sms_gateway: "},
		{func(s *Settings) { s.CommandRetry = 0 }, "alarms.command_retry must be positive"},
		{func(s *Settings) { s.StormHold = 0 }, "alarms: storm_window must not be negative, storm_hold must be positive"},
	} {
		s := DefaultSettings()
		s.Secret = "0123456789abcdef"
		tt.set(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
		}
	}
	// Config refuses what it cannot convert, with the same key names.
	s := DefaultSettings()
	s.Robots = "nonsense"
	if _, err := s.Config(); err == nil || !strings.HasPrefix(err.Error(), "alarms.robots: ") {
		t.Errorf("Config() with bad robots: %v", err)
	}
	s = DefaultSettings()
	s.SMSGateway = "ftp://x"
	if _, err := s.Config(); err == nil || !strings.HasPrefix(err.Error(), "alarms.sms_gateway: ") {
		t.Errorf("Config() with a bad SMS gateway: %v", err)
	}
}
