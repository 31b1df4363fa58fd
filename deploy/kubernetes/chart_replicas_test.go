package kubernetes

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func init() {
	replicas := func(extra map[string]any) map[string]any {
		t := map[string]any{"replicas": 3}
		for k, v := range extra {
			t[k] = v
		}
		return map[string]any{"tracker": t}
	}
	valueSets["replicas"] = replicas(nil)
	valueSets["replicas listed, persistent"] = replicas(map[string]any{
		"discovery": "list",
		"store":     map[string]any{"persistence": map[string]any{"enabled": true, "storageClassName": "fast", "size": "50Gi"}},
	})
	valueSets["replicas with TLS, monitored, policed"] = map[string]any{
		"tracker":        map[string]any{"replicas": 3, "tls": map[string]any{"existingSecret": "tracker-tls"}, "antiAffinity": "required"},
		"serviceMonitor": map[string]any{"enabled": true},
		"networkPolicy":  map[string]any{"enabled": true},
		"agent":          map[string]any{"metricsPort": 5051},
	}
	valueSets["one tracker with TLS"] = map[string]any{"tracker": map[string]any{"tls": map[string]any{"existingSecret": "tracker-tls"}}}
}

// trackerWorkload is the tracker's Deployment (one replica, recreated) or
// StatefulSet (several): its name, selector, pod template and claim
// templates.
func trackerWorkload(t *testing.T, r *rendered) (string, map[string]string, corev1.PodTemplateSpec, []corev1.PersistentVolumeClaim) {
	t.Helper()
	switch {
	case len(r.deployments) == 1 && len(r.statefulSets) == 0:
		d := r.deployments[0]
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("tracker: replicas %v, strategy %q; want one, recreated", d.Spec.Replicas, d.Spec.Strategy.Type)
		}
		return d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template, nil
	case len(r.statefulSets) == 1 && len(r.deployments) == 0:
		s := r.statefulSets[0]
		if s.Spec.Replicas == nil || *s.Spec.Replicas < 2 {
			t.Errorf("tracker StatefulSet of %v replicas, want several", s.Spec.Replicas)
		}
		return s.Name, s.Spec.Selector.MatchLabels, s.Spec.Template, s.Spec.VolumeClaimTemplates
	}
	t.Fatalf("%d Deployments and %d StatefulSets, want the tracker's", len(r.deployments), len(r.statefulSets))
	return "", nil, corev1.PodTemplateSpec{}, nil
}

// checkClaimedStore: with replicas and persistence, each pod's store is
// its own claim (the StatefulSet's template), and no shared PVC is made.
func checkClaimedStore(t *testing.T, spec corev1.PodSpec, c corev1.Container, dir string, claims []corev1.PersistentVolumeClaim, pvcs []*corev1.PersistentVolumeClaim) {
	t.Helper()
	if len(pvcs) != 0 {
		t.Errorf("%d PVCs beside the StatefulSet's claim templates", len(pvcs))
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		if slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
			t.Errorf("tracker store %s is a pod volume, want the claim template", m.Name)
		}
		if !slices.ContainsFunc(claims, func(pvc corev1.PersistentVolumeClaim) bool {
			return pvc.Name == m.Name && !pvc.Spec.Resources.Requests.Storage().IsZero()
		}) {
			t.Errorf("tracker store %s has no claim template with a size", m.Name)
		}
		return
	}
	t.Errorf("tracker mounts nothing at %s", dir)
}

// checkMonitors: each ServiceMonitor endpoint is the port of exactly one
// Service it selects, so no pod is scraped twice.
func checkMonitors(t *testing.T, r *rendered) {
	t.Helper()
	for _, m := range r.monitors {
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil {
			t.Fatalf("ServiceMonitor %s selector: %v", m.Name, err)
		}
		for _, ep := range m.Spec.Endpoints {
			var on []string
			for _, s := range r.services {
				if sel.Matches(labels.Set(s.Labels)) && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					on = append(on, s.Name)
				}
			}
			if len(on) != 1 {
				t.Errorf("ServiceMonitor endpoint %q is the port of Services %v, want exactly one", ep.Port, on)
			}
		}
	}
}

// TestTrackerReplicas renders tracker.replicas 1 and 3 (each discovery)
// and checks what agents and operators rely on: the workload, the headless
// Service agents resolve, the agents' --tracker, per-replica stores,
// spreading, the budget, the policy and the notes.
func TestTrackerReplicas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		values    map[string]any
		replicas  int
		discovery string // "" for one tracker
	}{
		{"one", nil, 1, ""},
		{"three over dns", map[string]any{"tracker": map[string]any{"replicas": 3}}, 3, "dns"},
		{"three listed", map[string]any{"tracker": map[string]any{"replicas": 3, "discovery": "list"}}, 3, "list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := decode(t, tc.values)
			agent := container(t, r.daemonSets[0].Spec.Template.Spec.Containers, "agent")
			args := argMap(t, agent.Args, "agent", nil)
			var headless *corev1.Service
			for _, s := range r.services {
				if s.Spec.ClusterIP == corev1.ClusterIPNone && s.Labels["app.kubernetes.io/component"] == "tracker" {
					headless = s
				}
			}
			notes, err := Notes(chartDir, DefaultRelease, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if tc.replicas == 1 {
				if len(r.statefulSets) != 0 || headless != nil {
					t.Errorf("one tracker: %d StatefulSets, headless Service %v", len(r.statefulSets), headless)
				}
				if u := args["tracker"]; strings.Contains(u, ",") || strings.HasPrefix(u, "dns+") {
					t.Errorf("one tracker: agents' --tracker %q", u)
				}
				return
			}
			if len(r.statefulSets) != 1 || len(r.deployments) != 0 {
				t.Fatalf("%d StatefulSets, %d Deployments; want the tracker's StatefulSet", len(r.statefulSets), len(r.deployments))
			}
			ss := r.statefulSets[0]
			pod := ss.Spec.Template
			if *ss.Spec.Replicas != int32(tc.replicas) || ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement || ss.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
				t.Errorf("StatefulSet: %d replicas, %q, %q; want %d, parallel, rolling", *ss.Spec.Replicas, ss.Spec.PodManagementPolicy, ss.Spec.UpdateStrategy.Type, tc.replicas)
			}
			if headless == nil || ss.Spec.ServiceName != headless.Name || !subset(headless.Spec.Selector, pod.Labels) || headless.Spec.PublishNotReadyAddresses {
				t.Fatalf("headless Service %+v: want the StatefulSet's serviceName, selecting its pods, ready ones only", headless)
			}
			// The agents' --tracker: every replica through the headless
			// Service.
			host := fmt.Sprintf("%s.%s.svc:%d", headless.Name, headless.Namespace, headless.Spec.Ports[0].Port)
			u := args["tracker"]
			switch tc.discovery {
			case "dns":
				if u != "dns+http://"+host {
					t.Errorf("agents' --tracker %q, want dns+http://%s", u, host)
				}
			case "list":
				var want []string
				for i := range tc.replicas {
					want = append(want, fmt.Sprintf("http://%s-%d.%s", ss.Name, i, host))
				}
				if u != strings.Join(want, ",") {
					t.Errorf("agents' --tracker %q, want %q", u, strings.Join(want, ","))
				}
			}
			// Spread over nodes by default, each with its own store.
			aff := pod.Spec.Affinity
			if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
				t.Fatalf("tracker affinity %+v, want a preferred anti-affinity", aff)
			}
			term := aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
			if term.TopologyKey != corev1.LabelHostname || !subset(term.LabelSelector.MatchLabels, pod.Labels) {
				t.Errorf("anti-affinity term %+v, want the tracker's pods by node", term)
			}
			if len(r.pdbs) != 1 || r.pdbs[0].Spec.MaxUnavailable == nil || r.pdbs[0].Spec.MaxUnavailable.IntValue() != 1 {
				t.Errorf("PDBs %+v, want one letting one replica go at a time", r.pdbs)
			}
			for _, want := range []string{fmt.Sprintf("%d tracker replicas", tc.replicas), u, "shoal seed --tracker " + u, "port-forward pod/" + ss.Name + "-0"} {
				if !strings.Contains(notes, want) {
					t.Errorf("NOTES lack %q:\n%s", want, notes)
				}
			}
		})
	}
}

// TestTrackerTLS: with tracker.tls the tracker serves its Secret's pair,
// probes over HTTPS, and agents dial https with its CA; the names NOTES
// says the certificate must carry cover the host every agent dials (for
// dns+, the name itself, sent as SNI to each address).
func TestTrackerTLS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{"one", map[string]any{"tracker": map[string]any{"tls": map[string]any{"existingSecret": "tracker-tls"}}}},
		{"dns", map[string]any{"tracker": map[string]any{"replicas": 3, "tls": map[string]any{"existingSecret": "tracker-tls"}}}},
		{"list", map[string]any{"tracker": map[string]any{"replicas": 2, "discovery": "list", "tls": map[string]any{"existingSecret": "tracker-tls"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := decode(t, tc.values)
			_, _, pod, _ := trackerWorkload(t, r)
			tr := container(t, pod.Spec.Containers, "tracker")
			targs := argMap(t, tr.Args, "tracker", nil)
			for _, f := range []string{"tls-cert", "tls-key"} {
				if v := volumeAt(t, pod.Spec, tr, path.Dir(targs[f])); v.Secret == nil || v.Secret.SecretName != "tracker-tls" {
					t.Errorf("tracker --%s=%s not from the Secret tracker-tls: %+v", f, targs[f], v)
				}
			}
			for _, p := range []*corev1.Probe{tr.LivenessProbe, tr.ReadinessProbe} {
				if p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
					t.Errorf("tracker probe over %q, want HTTPS", p.HTTPGet.Scheme)
				}
			}
			spec := r.daemonSets[0].Spec.Template.Spec
			agent := container(t, spec.Containers, "agent")
			args := argMap(t, agent.Args, "agent", nil)
			if v := volumeAt(t, spec, agent, path.Dir(args["tracker-ca"])); v.Secret == nil || v.Secret.SecretName != "tracker-tls" {
				t.Errorf("agent --tracker-ca=%s not from the Secret: %+v", args["tracker-ca"], v)
			}
			notes, err := Notes(chartDir, DefaultRelease, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			names := certNames(notes)
			for _, one := range strings.Split(args["tracker"], ",") {
				u, err := url.Parse(strings.TrimPrefix(one, "dns+"))
				if err != nil || u.Scheme != "https" {
					t.Fatalf("agents' --tracker %q, want https", one)
				}
				if !slices.ContainsFunc(names, func(n string) bool { return certCovers(n, u.Hostname()) }) {
					t.Errorf("the certificate names %v do not cover %s, which agents dial", names, u.Hostname())
				}
			}
		})
	}
}

// certNames reads the names NOTES lists after "must name:".
func certNames(notes string) []string {
	_, rest, ok := strings.Cut(notes, "must name:\n")
	if !ok {
		return nil
	}
	var out []string
	for _, line := range strings.Split(rest, "\n") {
		n, ok := strings.CutPrefix(strings.TrimSpace(line), "- ")
		if !ok {
			break
		}
		out = append(out, strings.Trim(n, `"`))
	}
	return out
}

// certCovers: a certificate name matches host as TLS checks it (a
// wildcard covers one label).
func certCovers(name, host string) bool {
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		_, hostRest, _ := strings.Cut(host, ".")
		return hostRest == rest
	}
	return name == host
}

// TestBadReplicaValues: a value the chart cannot use fails the render with
// a message naming it.
func TestBadReplicaValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tracker map[string]any
		want    string
	}{
		{map[string]any{"replicas": 0}, "tracker.replicas 0"},
		{map[string]any{"replicas": 3, "discovery": "srv"}, `tracker.discovery "srv"`},
		{map[string]any{"replicas": 3, "antiAffinity": "soft"}, `tracker.antiAffinity "soft"`},
	} {
		_, err := Render(chartDir, DefaultRelease, map[string]any{"tracker": tc.tracker})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tracker %v: %v, want %q", tc.tracker, err, tc.want)
		}
	}
}

// TestTrackerReplicasWebhooks: with seed jobs, every replica is given the
// replica set as the agents are (--replicas) and its own name in it
// (--replica-self, from the downward API: the pod's IP for dns+, its
// stable name for a list), so a webhook that reaches one through the
// Service is passed on to the others.
func TestTrackerReplicasWebhooks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		discovery string
		self      string
		env       string
	}{
		{"dns", "$(POD_IP)", "status.podIP"},
		{"list", "http://$(POD_NAME).shoal-tracker-headless.shoal.svc:7070", "metadata.name"},
	} {
		t.Run(tc.discovery, func(t *testing.T) {
			t.Parallel()
			r := decode(t, map[string]any{"tracker": map[string]any{"replicas": 3, "seedJobs": true, "discovery": tc.discovery}})
			agent := argMap(t, container(t, r.daemonSets[0].Spec.Template.Spec.Containers, "agent").Args, "agent", nil)
			tr := container(t, r.statefulSets[0].Spec.Template.Spec.Containers, "tracker")
			args := argMap(t, tr.Args, "tracker", nil)
			if args["replicas"] != agent["tracker"] || args["replica-self"] != tc.self {
				t.Errorf("tracker --replicas %q --replica-self %q, want the agents' %q and %q", args["replicas"], args["replica-self"], agent["tracker"], tc.self)
			}
			found := false
			for _, e := range tr.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == tc.env {
					found = true
				}
			}
			if !found {
				t.Errorf("tracker env %+v: no variable from %s", tr.Env, tc.env)
			}
		})
	}
	r := decode(t, map[string]any{"tracker": map[string]any{"replicas": 3}})
	if args := argMap(t, container(t, r.statefulSets[0].Spec.Template.Spec.Containers, "tracker").Args, "tracker", nil); args["replicas"] != "" {
		t.Errorf("replicas without seed jobs: --replicas %q, want none (no webhooks to pass on)", args["replicas"])
	}
}
