// Command gpx_firewatch is the backend of the firewatch Grafana data source
// plugin. Grafana starts it and talks to it over gRPC (grafana-plugin-sdk-go).
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/firewatch-iot/firewatch/dashboards/plugin/pkg/plugin"
)

func main() {
	if err := datasource.Manage(plugin.ID, plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("firewatch plugin", "err", err.Error())
		os.Exit(1)
	}
}
