"""Period reports of a site, area or device: energy, cost, demand, findings; JSON/HTML/PDF/CSV."""
