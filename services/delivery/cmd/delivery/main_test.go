package main

import (
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/config"
)

// TestDeliveryRefusesToStartWithAScheduleLongerThanRetention: the start-up
// settings are refused when DELIVERY_RETRY_SCHEDULE adds up to more than
// DELIVERY_RETENTION (set, or its default), with a message naming both.
func TestDeliveryRefusesToStartWithAScheduleLongerThanRetention(t *testing.T) {
	for _, c := range []struct {
		env map[string]string
		ok  bool
	}{
		{map[string]string{}, true},
		{map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,1m,5m,30m,2h", "DELIVERY_RETENTION": "3h"}, true},
		{map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,1m,5m,30m,2h", "DELIVERY_RETENTION": "2h"}, false},
		{map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,100h,100h"}, false}, // default retention: 168h
	} {
		_, err := readSettings(config.FromMap(c.env))
		if c.ok != (err == nil) {
			t.Errorf("%v: %v, want ok %v", c.env, err, c.ok)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), "DELIVERY_RETRY_SCHEDULE") || !strings.Contains(err.Error(), "DELIVERY_RETENTION")) {
			t.Errorf("%v: message %q names not both variables", c.env, err)
		}
	}
}

// TestDeliveryRefusesToStartWithABadEgressProxyURL: a DELIVERY_PROXY_URL
// that is not an http(s):// proxy stops start-up with a message naming the
// variable, without showing its password; a good one is kept.
func TestDeliveryRefusesToStartWithABadEgressProxyURL(t *testing.T) {
	_, err := readSettings(config.FromMap(map[string]string{"DELIVERY_PROXY_URL": "socks5://svc:s3cr3t@egress:1080"}))
	if err == nil || !strings.Contains(err.Error(), "DELIVERY_PROXY_URL") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("bad proxy URL: %v; want an error naming DELIVERY_PROXY_URL without the password", err)
	}
	s, err := readSettings(config.FromMap(map[string]string{"DELIVERY_PROXY_URL": "http://svc:s3cr3t@egress:3128"}))
	if err != nil || s.proxy == nil || s.proxy.String() != "http://svc:xxxxx@egress:3128" {
		t.Fatalf("good proxy URL: %v, %v", s.proxy, err)
	}
}

// TestDeliveryRefusesAHistoryRetentionShorterThanParkedWork: a set
// HISTORY_RETENTION must outlive PARKED_RETENTION + the schedule + 1 day;
// the default grows to that.
func TestDeliveryRefusesAHistoryRetentionShorterThanParkedWork(t *testing.T) {
	if _, err := readSettings(config.FromMap(map[string]string{"HISTORY_RETENTION": "720h"})); err == nil || !strings.Contains(err.Error(), "HISTORY_RETENTION") {
		t.Fatalf("HISTORY_RETENTION=720h with PARKED_RETENTION=720h: %v, want refused", err)
	}
	s, err := readSettings(config.FromMap(map[string]string{"HISTORY_RETENTION": "1000h", "PARKED_RETENTION": "24h"}))
	if err != nil || s.historyKeep != 1000*time.Hour || s.parkedKeep != 24*time.Hour {
		t.Fatalf("readSettings = %+v, %v", s, err)
	}
}
