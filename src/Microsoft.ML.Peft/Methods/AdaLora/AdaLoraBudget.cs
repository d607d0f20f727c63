namespace Microsoft.ML.Peft.Methods.AdaLora;

/// <summary>
/// AdaLoRA's cubic budget schedule (<c>peft</c>'s <c>RankAllocator.budget_schedule</c>), as a pure function.
/// </summary>
internal static class AdaLoraBudget
{
    /// <summary>
    /// The total number of singular values to keep after step <paramref name="step"/> (1-based) and whether to mask
    /// now.
    /// Up to <paramref name="tinit"/> steps the full initial budget trains unmasked; from step <c>total − tfinal</c>
    /// on the target budget holds; in between the budget falls as
    /// <c>target + (init − target) · (1 − progress)³</c>, masking every <paramref name="deltaT"/> steps.
    /// </summary>
    public static (int Budget, bool Mask) At(int step, int totalSteps, int initBudget, int targetBudget, int tinit,
        int tfinal, int deltaT)
    {
        if (step <= tinit) return (initBudget, false);
        if (step >= totalSteps - tfinal) return (targetBudget, true);
        double progress = (step - tinit) / (double)(totalSteps - tfinal - tinit);
        double coefficient = Math.Pow(1 - progress, 3);
        int budget = (int)((initBudget - targetBudget) * coefficient + targetBudget);
        return (budget, step % Math.Max(1, deltaT) == 0);
    }

    /// <summary>
    /// Steps of the initial (unmasked) and final (fixed-budget) phases for <paramref name="totalSteps"/> steps.
    /// </summary>
    public static (int Tinit, int Tfinal) Phases(int totalSteps, double initialFraction, double finalFraction)
    {
        int tinit = (int)Math.Round(totalSteps * initialFraction);
        int tfinal = (int)Math.Round(totalSteps * finalFraction);
        // Keep at least the last step for the final mask, and the final phase after the warm-up.
        tfinal = Math.Clamp(tfinal, 0, Math.Max(0, totalSteps - 1));
        tinit = Math.Clamp(tinit, 0, Math.Max(0, totalSteps - tfinal - 1));
        return (tinit, tfinal);
    }
}
