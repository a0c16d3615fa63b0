"""AI services: appliance detection (NILM), forecasting, anomaly detection, model lifecycle.

Pure computation on numpy/pandas; nothing here touches the store, the web or the CLI.
The heavy dependencies (pandas, scikit-learn, hmmlearn) come with the ``[ml]`` extra.
"""
