// Package packaging holds the Debian packaging of firewatch and firegate
// (nfpm configurations, systemd units, maintainer scripts, example
// configurations) and the test that installs, upgrades and purges the
// built packages on this machine (`make package-test`, docs/install.md).
package packaging
